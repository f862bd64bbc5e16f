import { strict as assert } from 'assert';
import { isWebviewMessage } from '../../../extension/protocol';

describe('webview -> extension messages', () => {
  it('accepts each known type with the fields it needs', () => {
    for (const m of [{ type: 'ready', panel: 'overlay' }, { type: 'ready', panel: 'reservations' }, { type: 'overlay/publish' }, { type: 'overlay/cancel' },
      { type: 'server/refresh' }, { type: 'server/action', action: 'handoff' }, { type: 'reservations/refresh' }, { type: 'reservations/reserve' }, { type: 'copy', text: 'reg/x:1' }]) {
      assert.ok(isWebviewMessage(m), JSON.stringify(m));
    }
  });

  it('refuses unknown types, inherited names, missing or wrong fields, non-objects', () => {
    for (const m of [undefined, null, 'ready', 42, [], {}, { type: 'progress' }, { type: 'toString' }, { type: '__proto__' }, { type: 1 },
      { type: 'ready' }, { type: 'ready', panel: 'other' }, { type: 'copy' }, { type: 'copy', text: 7 }, { type: 'server/action' }, { type: 'server/action', action: 'reboot' }]) {
      assert.equal(isWebviewMessage(m), false, JSON.stringify(m));
    }
  });
});
