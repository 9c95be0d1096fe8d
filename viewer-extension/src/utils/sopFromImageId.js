/**
 * The SOPInstanceUID an imageId shows, or null.
 *
 * Handles the DICOMweb image ids OHIF builds (`wadors:<root>/studies/S/series/R/instances/<SOP>/frames/N`)
 * and WADO-URI ids (`wadouri:<root>?...&objectUID=<SOP>`).
 */
export default function sopFromImageId(imageId) {
  if (typeof imageId !== 'string' || !imageId) {
    return null;
  }
  const rs = /\/instances\/([0-9.]+)(?:\/frames\/\d+)?(?:[/?#]|$)/.exec(imageId);
  if (rs) {
    return rs[1];
  }
  const uri = /[?&]objectUID=([0-9.]+)/.exec(imageId);
  return uri ? uri[1] : null;
}
