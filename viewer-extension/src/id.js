import packageJson from '../package.json' with { type: 'json' };

const id = '@orthanc-cbmir/extension-similar-cases';
const version = packageJson.version;
const PANEL_NAME = 'similarCases';
/** What app-config's `rightPanels` and a mode's layout use to name the panel. */
const PANEL_ID = `${id}.panelModule.${PANEL_NAME}`;

export { id, version, PANEL_NAME, PANEL_ID };
