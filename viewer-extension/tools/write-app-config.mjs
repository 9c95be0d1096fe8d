// Writes OHIF's app-config.js for a viewer served by Orthanc under <public-path>: a DICOMweb data source on
// the same origin (Orthanc's /dicom-web and /wado), the extension as an ES module URL, and the panel.
// OHIF >= 3.13 gets the panel through customizationService; older 3.x through the runtime mode.
// Usage: node tools/write-app-config.mjs <out-file> <public-path> <ohif-version> [auto|on|off]
import fs from 'node:fs';
import { PANEL_ID } from '../src/id.js';

const [outFile, publicPathArg, ohifVersion, runtimeModeArg = 'auto'] = process.argv.slice(2);
if (!outFile || !publicPathArg || !ohifVersion) {
  console.error('usage: write-app-config.mjs <out-file> <public-path> <ohif-version> [auto|on|off]');
  process.exit(2);
}
const base = `/${publicPathArg.replace(/^\/+|\/+$/g, '')}/`.replace(/^\/\/$/, '/');
const [major, minor] = ohifVersion.split('.').map(Number);
const before313 = major < 3 || (major === 3 && minor < 13);
const runtimeMode = runtimeModeArg === 'on' || (runtimeModeArg === 'auto' && before313);

const config = `/* Written by viewer-extension/tools/write-app-config.mjs for OHIF ${ohifVersion}: do not edit. */
(function () {
  var origin = window.location.origin;
  window.config = {
    name: 'orthanc-cbmir',
    routerBasename: ${JSON.stringify(base.replace(/\/$/, '') || '/')},
    showStudyList: true,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    maxNumberOfWebWorkers: 3,
    investigationalUseDialog: { option: 'never' },
    extensions: [${JSON.stringify(`${base}cbmir/cbmir-extension.js`)}],
    modes: ${runtimeMode ? JSON.stringify([`${base}cbmir/cbmir-mode.js`]) : '[]'},
    customizationService: ${
      runtimeMode ? '{}' : `{ mode: { '@ohif/mode-longitudinal': { rightPanels: { $push: [${JSON.stringify(PANEL_ID)}] } } } }`
    },
    cbmir: { apiRoot: '/cbmir', orthancRoot: '' },
    defaultDataSourceName: 'orthanc',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'orthanc',
        configuration: {
          friendlyName: 'Orthanc (same origin)',
          name: 'orthanc',
          qidoRoot: origin + '/dicom-web',
          wadoRoot: origin + '/dicom-web',
          wadoUriRoot: origin + '/wado',
          qidoSupportsIncludeField: false,
          supportsReject: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          staticWado: false,
          singlepart: 'bulkdata,video',
          bulkDataURI: { enabled: true, relativeResolution: 'studies' },
          omitQuotationForMultipartRequest: true,
        },
      },
    ],
  };
})();
`;
fs.writeFileSync(outFile, config);
console.log(`write-app-config: ${outFile} (OHIF ${ohifVersion}, panel via ${runtimeMode ? 'runtime mode /similar' : 'customizationService'})`);
