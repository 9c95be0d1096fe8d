const id = '@orthanc-cbmir/extension-similar-cases';
/** Kept equal to package.json's version (a unit test checks). */
const version = '0.1.0';
const PANEL_NAME = 'similarCases';
/** What app-config's `rightPanels` and a mode's layout use to name the panel. */
const PANEL_ID = `${id}.panelModule.${PANEL_NAME}`;

export { id, version, PANEL_NAME, PANEL_ID };
