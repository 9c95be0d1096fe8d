import { test } from 'node:test';
import assert from 'node:assert/strict';
import getHangingProtocolModule, { SIDE_BY_SIDE_ID } from './sideBySide.js';
import { DEFAULTS } from '../config.js';

test('one protocol, two viewports: the read study (index 0) and the similar case (index 1), each on its slice', () => {
  const [{ name, protocol }] = getHangingProtocolModule();
  assert.equal(name, SIDE_BY_SIDE_ID);
  assert.equal(protocol.id, SIDE_BY_SIDE_ID);
  assert.equal(DEFAULTS.compareProtocolId, SIDE_BY_SIDE_ID);
  const [stage] = protocol.stages;
  assert.deepEqual(stage.viewportStructure.properties, { rows: 1, columns: 2 });
  const ids = stage.viewports.map(v => v.displaySets[0].id);
  const index = id => protocol.displaySetSelectors[id].studyMatchingRules[0].constraint.equals.value;
  assert.deepEqual(ids.map(index), [0, 1]);
  for (const v of stage.viewports) {
    assert.deepEqual(v.viewportOptions.initialImageOptions, { custom: 'sopInstanceLocation' });
  }
});
