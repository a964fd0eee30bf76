// Entry point: registers the pages and shows which model is loaded in the header.

import { getModel } from './api.js';
import { fmtInt } from './format.js';
import { route, start } from './router.js';

route('features', /^\/$/, () => import('./page-features.js'));
route('feature', /^\/features\/(\d+)\/?$/, () => import('./page-feature.js'));
route('encode', /^\/encode\/?$/, () => import('./page-encode.js'));
route('model', /^\/model\/?$/, () => import('./page-model.js'));

start();

// The header names the loaded model once any page has fetched it.
window.addEventListener('saed:model', ({ detail: m }) => {
  const parts = [m.model_name, m.hook_name, `${fmtInt(m.d_sae)} features`].filter(Boolean);
  document.getElementById('model-line').textContent = parts.join(' · ');
});
getModel().catch(() => {
  /* the page itself shows the error (including the API key prompt) */
});
