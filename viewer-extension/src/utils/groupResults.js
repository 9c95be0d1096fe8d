/**
 * Groups retrieval hits by study, best study first.
 *
 * The API answers best-first; a study's rank is the rank of its best hit, and its hits keep their order.
 * Hits without a StudyInstanceUID each form their own group.
 *
 * @returns {{studyInstanceUid: string, best: object, hits: object[], label: string|null}[]}
 */
export default function groupResults(results) {
  const groups = new Map();
  (results || []).forEach((hit, index) => {
    const key = hit.study_instance_uid || `_ungrouped_${index}`;
    let group = groups.get(key);
    if (!group) {
      group = { studyInstanceUid: hit.study_instance_uid || null, best: hit, hits: [] };
      groups.set(key, group);
    }
    group.hits.push(hit);
    if (_score(hit) > _score(group.best)) {
      group.best = hit;
    }
  });
  return [...groups.values()]
    .map(group => ({ ...group, label: group.best.label ?? null }))
    .sort((a, b) => _score(b.best) - _score(a.best));
}

function _score(hit) {
  return typeof hit.score === 'number' ? hit.score : -Infinity;
}
