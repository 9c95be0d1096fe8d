/**
 * Labels the filter can offer before any answer has named them: the model card's training labels in
 * `/cbmir/status` (`model.card.labels`), if the plugin reports them.
 */
export default function labelsFromStatus(status) {
  const labels = status?.model?.card?.labels ?? status?.labels;
  if (!Array.isArray(labels)) {
    return [];
  }
  return [...new Set(labels.filter(label => typeof label === 'string' && label.trim()).map(label => label.trim()))];
}
