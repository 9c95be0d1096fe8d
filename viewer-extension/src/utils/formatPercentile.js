/**
 * Words for a result's `percentile` (share of the archive less similar to the query, 0-100) and its
 * tooltip. Always rounded down, so a result never reads closer than it is: 99.97 -> "99.97", 99.4 -> "99.4",
 * 87.9 -> "87". Top results crowd near 100, so they keep more digits.
 */
export function formatPercentile(percentile) {
  if (typeof percentile !== 'number' || !Number.isFinite(percentile)) {
    return '';
  }
  const p = Math.min(100, Math.max(0, percentile));
  const digits = p >= 99.9 ? 2 : p >= 99 ? 1 : 0;
  const scale = 10 ** digits;
  // (p * scale) can land a hair under an integer in floating point (99.97 * 100 = 9996.999...).
  return (Math.floor(p * scale + 1e-6) / scale).toFixed(digits);
}

/** The card's similarity: "closer than 99.8 %", or the raw cosine where the API gives no percentile. */
export function similarityText(hit) {
  const words = formatPercentile(hit?.percentile);
  if (words) {
    return `closer than ${words} %`;
  }
  return typeof hit?.score === 'number' ? `cosine ${hit.score.toFixed(3)}` : '';
}

/** The tooltip: what the number means, and the raw cosine it comes from. */
export function similarityTooltip(hit) {
  const cosine = typeof hit?.score === 'number' ? hit.score.toFixed(6) : 'unknown';
  const words = formatPercentile(hit?.percentile);
  const head = words
    ? `More similar to the slice on screen than ${words} % of the images in this archive ` +
      '(estimated from a random sample of up to 4096 of them).'
    : 'This server gives no percentile.';
  return `${head}\nRaw cosine similarity of the image embeddings: ${cosine}.`;
}
