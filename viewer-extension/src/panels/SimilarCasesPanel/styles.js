const STYLE_ID = 'cbmir-similar-cases-styles';

// The host's Tailwind classes are not ours to rely on: the panel styles itself, every class prefixed.
const CSS = `
.cbmir-panel{display:flex;flex-direction:column;gap:8px;height:100%;overflow-y:auto;padding:8px;box-sizing:border-box;
  color:#d1d5db;font-size:13px;font-family:inherit}
.cbmir-title{font-size:15px;font-weight:600;color:#f3f4f6}
.cbmir-subtitle{font-size:12px;color:#9ca3af;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.cbmir-controls{display:flex;flex-wrap:wrap;gap:8px 12px;align-items:center}
.cbmir-control{display:flex;align-items:center;gap:4px;font-size:12px;color:#9ca3af}
.cbmir-control select{background:#111827;color:#e5e7eb;border:1px solid #374151;border-radius:4px;padding:2px 4px;font-size:12px}
.cbmir-check input{accent-color:#5acce6}
.cbmir-message{border-radius:4px;padding:6px 8px;font-size:12px;line-height:1.4}
.cbmir-info{background:#111827;color:#9ca3af}
.cbmir-warn{background:#3b2f0b;color:#fcd34d}
.cbmir-error{background:#3f1212;color:#fca5a5}
.cbmir-summary{background:#0b2535;border:1px solid #1e4f66;border-radius:4px;padding:6px 8px;color:#e5e7eb;line-height:1.4}
.cbmir-disclaimer{color:#9ca3af;font-size:11px;margin-top:2px}
.cbmir-results{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:6px}
.cbmir-stale{opacity:.5}
.cbmir-result{display:flex;gap:8px;background:#0d1117;border:1px solid #1f2937;border-radius:4px;padding:6px}
.cbmir-thumb{flex:0 0 72px;height:72px;background:#000;display:flex;align-items:center;justify-content:center;overflow:hidden;border-radius:2px}
.cbmir-thumb img{display:block;width:72px;height:72px;max-width:none;object-fit:contain}
.cbmir-meta{flex:1;min-width:0;display:flex;flex-direction:column;gap:2px}
.cbmir-row{display:flex;justify-content:space-between;align-items:center;gap:6px}
.cbmir-label{font-weight:600;color:#5acce6;text-transform:capitalize}
.cbmir-unlabelled{color:#6b7280;font-weight:400;text-transform:none}
.cbmir-score{font-variant-numeric:tabular-nums;color:#e5e7eb}
.cbmir-detail{font-size:11px;color:#9ca3af;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.cbmir-open{background:#1e4f66;color:#e5f6fb;border:0;border-radius:3px;padding:2px 10px;font-size:12px;cursor:pointer}
.cbmir-open:hover{background:#2a6f8f}
.cbmir-compare{display:flex;justify-content:space-between;align-items:center;gap:6px;background:#1e3a2a;border:1px solid #2f6b47;
  border-radius:4px;padding:6px 8px;color:#d1fae5;font-size:12px}
.cbmir-compared{border-color:#5acce6}
.cbmir-legend{font-size:11px;color:#9ca3af;line-height:1.3}
.cbmir-score{cursor:help;white-space:nowrap;font-size:12px}
.cbmir-link{background:none;border:0;color:#5acce6;text-decoration:underline;cursor:pointer;padding:0;font-size:12px}
`;

export function ensureStyles(doc = globalThis.document) {
  if (!doc || doc.getElementById(STYLE_ID)) {
    return;
  }
  const style = doc.createElement('style');
  style.id = STYLE_ID;
  style.textContent = CSS;
  doc.head.appendChild(style);
}
