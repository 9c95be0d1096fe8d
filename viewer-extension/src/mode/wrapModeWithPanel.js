/**
 * A copy of an OHIF mode (an instance made by a mode's `modeFactory`) whose layouts also show `panelId` on
 * the right and which depends on the extension that provides it. Used by the runtime mode for OHIF
 * versions before 3.13, where app-config cannot add a panel to the stock modes.
 */
export default function wrapModeWithPanel(
  baseMode,
  { panelId, extensionId, extensionKey, extensionVersion, id, routeName, displayName }
) {
  if (!baseMode || !Array.isArray(baseMode.routes)) {
    throw new TypeError('wrapModeWithPanel needs a mode instance with routes');
  }
  return {
    ...baseMode,
    id: id ?? baseMode.id,
    routeName: routeName ?? baseMode.routeName,
    displayName: displayName ?? baseMode.displayName,
    // OHIF imports every key of `extensions` when the mode starts: a URL loads, a bare id would not.
    extensions: { ...(baseMode.extensions || {}), [extensionKey || extensionId]: `^${extensionVersion}` },
    routes: baseMode.routes.map(route => ({
      ...route,
      layoutTemplate: (...args) => _withPanel(route.layoutTemplate(...args), panelId),
    })),
  };
}

function _withPanel(layout, panelId) {
  const rightPanels = (layout?.props?.rightPanels || []).filter(panel => panel !== panelId);
  return { ...layout, props: { ...(layout?.props || {}), rightPanels: [...rightPanels, panelId] } };
}
