export const DISCLAIMER = 'A retrieval aid for comparison, not a diagnosis.';

/**
 * Counts labels among the similar cases (one vote per case: the label of its best hit) and words the result
 * as a decision aid, e.g. "7 of 10 similar cases are labelled glioma; 2 meningioma; 1 unlabelled."
 *
 * With a label filter on, every case carries that label by construction: counting them ("9 of 9 are
 * labelled glioma") would read as evidence. The text then says that a filter is on instead.
 *
 * @param {{label: string|null}[]} cases - one entry per similar case (the plugin sends one hit per study)
 * @param {{filterLabel?: string|null}} [options] - the label filter the answer was made with
 * @returns {{total: number, counts: {label: string|null, count: number}[], text: string, disclaimer: string,
 *   filtered: boolean}}
 */
export default function summarizeLabels(cases, { filterLabel = null } = {}) {
  const list = cases || [];
  const filter = _normalise(filterLabel);
  const tally = new Map();
  for (const item of list) {
    const label = _normalise(item?.label);
    tally.set(label, (tally.get(label) || 0) + 1);
  }
  const counts = [...tally.entries()]
    .map(([label, count]) => ({ label, count }))
    .sort((a, b) => b.count - a.count || _name(a.label).localeCompare(_name(b.label)));
  const text = filter === null ? _words(counts, list.length) : _filteredWords(filter, list.length);
  return { total: list.length, counts, text, disclaimer: DISCLAIMER, filtered: filter !== null };
}

function _filteredWords(filter, total) {
  const cases = total === 1 ? 'case' : 'cases';
  return (
    `Label filter on: only cases labelled ${filter} are shown (${total} ${cases}), so these labels say ` +
    'nothing about what the nearest cases are. Set the label to "any" for a summary.'
  );
}

function _words(counts, total) {
  if (!total) {
    return 'No similar cases to summarise.';
  }
  const noun = total === 1 ? 'similar case is' : 'similar cases are';
  const [first, ...rest] = counts;
  const head =
    first.label === null
      ? `${first.count} of ${total} ${total === 1 ? 'similar case has' : 'similar cases have'} no label`
      : `${first.count} of ${total} ${noun} labelled ${first.label}`;
  const tail = rest.map(({ label, count }) => `${count} ${_name(label)}`);
  return [head, ...tail].join('; ') + '.';
}

function _normalise(label) {
  if (typeof label !== 'string') {
    return null;
  }
  const trimmed = label.trim();
  return trimmed ? trimmed : null;
}

function _name(label) {
  return label === null ? 'unlabelled' : label;
}
