import React from 'react';
import { PANEL_NAME } from './id.js';
import createIsland from './utils/createIsland.jsx';
import { WrappedSimilarCasesPanel } from './panels/SimilarCasesPanel/index.js';
import { getExtensionConfig } from './config.js';

/** The "Similar cases" right-side panel. OHIF renders panels without props: the managers are bound here. */
export default function getPanelModule({ servicesManager, commandsManager, extensionManager, panelOpener }) {
  const component = createIsland(
    () => (
      <WrappedSimilarCasesPanel
        servicesManager={servicesManager}
        commandsManager={commandsManager}
        extensionManager={extensionManager}
        panelOpener={panelOpener}
        config={getExtensionConfig()}
      />
    ),
    { displayName: 'SimilarCasesPanel' }
  );

  return [
    {
      name: PANEL_NAME,
      // OHIF's magnifier: "search" (not the generic person icon the side bar shows for patient info).
      iconName: 'icon-search',
      iconLabel: 'Similar cases',
      label: 'Similar cases',
      component,
    },
  ];
}
