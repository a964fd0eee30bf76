// Client-side routing with history.pushState. saed serves index.html for every
// page path, so a deep link such as /features/12 lands here and is rendered
// from location.pathname. A page under /saes/{id} is the same page on SAE id
// (release.js): the router takes the prefix off before matching and hands the
// page its scope, with which it builds its links and API paths.

import { getSaes } from './api.js';
import { emptyState, errorState, fill, h, pageHeading } from './dom.js';
import { apiPath, pagePath, splitScope } from './release.js';

const routes = [];
const listeners = [];
let current = null; // { route, scope, params, view, controller }

// Registers a page: `pattern` is a RegExp over the path whose groups are the
// params; `load` returns the page module, whose render(main, ctx) draws it and
// may return a view with update(ctx) for query-only changes (kept focus). A
// view whose data arrives after render returns carries `ready` (a promise)
// and returns one from update, settled once drawn: Back's scroll position is
// restored then. `scoped` false: the page exists only unprefixed (it is not
// about one SAE).
export function route(name, pattern, load, { scoped = true } = {}) {
  routes.push({ name, pattern, load, scoped });
}

// Calls fn({ name, scope, url }) whenever a page is drawn (name null: no page
// matched), for the parts of the shell that follow the page (app.js).
export function onPage(fn) {
  listeners.push(fn);
}

function match(path) {
  const { scope, rest } = splitScope(path);
  for (const r of routes) {
    if (scope !== null && !r.scoped) continue;
    const m = r.pattern.exec(rest);
    if (m) return { route: r, scope, params: m.slice(1) };
  }
  return null;
}

// Whether `scope` names an SAE saed serves; true when the list cannot be had
// (the page then shows the API's own error).
async function knownScope(scope) {
  if (scope === null) return true;
  const saes = await getSaes().catch(() => null);
  return !saes || saes.some((s) => s.id === scope);
}

// The page for an address under /saes/{id} whose id no SAE has.
async function noSuchSae(main, scope) {
  document.title = 'No such SAE · saed';
  const saes = await getSaes().catch(() => []);
  fill(main, pageHeading('No such SAE'), emptyState(`No SAE has the id “${scope}”`,
    h('p', {}, 'This saed serves ', saes.length === 1 ? 'one SAE' : `${saes.length} SAEs`, ':'),
    h('ul', { class: 'sae-links' }, saes.map((s) => h('li', {},
      h('a', { href: pagePath(s.default ? null : s.id, '/') }, s.id))))));
}

function markNav(name) {
  for (const a of document.querySelectorAll('[data-nav]')) {
    const on = a.dataset.nav === name || ((name === 'feature' || name === 'example') && a.dataset.nav === 'features');
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// Scrolls to y once `drawn` has settled, unless another navigation (a new
// controller) came meanwhile; nothing for y null.
async function restoreScroll(drawn, controller, y) {
  if (y === null) return;
  await drawn;
  if (current.controller === controller) window.scrollTo(0, y);
}

// Draws the page of the current URL. `scrollY` (Back/Forward) is where the
// page was scrolled when it was left: restored once it is drawn again, since
// the browser's own restoration runs before the page's data has arrived.
async function render({ focus, scrollY = null }) {
  const main = document.getElementById('main');
  const url = new URL(location.href);
  const found = match(url.pathname);
  const scope = found ? found.scope : null;
  const ctx = {
    params: found ? found.params : [], query: url.searchParams, url, scope,
    href: (rest) => pagePath(scope, rest), // a page address in this page's SAE
    apiPath: (rest) => apiPath(scope, rest), // an API route of this page's SAE
  };
  for (const fn of listeners) fn({ name: found ? found.route.name : null, scope, url });
  if (current && found && current.route === found.route && current.scope === scope &&
      String(current.params) === String(found.params) && current.view?.update) {
    current.controller.abort();
    const controller = new AbortController();
    current.controller = controller;
    ctx.signal = controller.signal;
    await restoreScroll(current.view.update(ctx), controller, scrollY);
    return;
  }
  if (current) current.controller.abort();
  const controller = new AbortController();
  ctx.signal = controller.signal;
  current = { route: found?.route, scope, params: ctx.params, view: null, controller };
  markNav(found ? found.route.name : null);
  if (found && !(await knownScope(scope))) {
    if (current.controller === controller) await noSuchSae(main, scope);
  } else if (!found) {
    document.title = 'Not found · saed';
    fill(main, pageHeading('Page not found'),
      h('p', {}, 'Nothing lives at ', h('code', {}, url.pathname), '. Try the ',
        h('a', { href: '/' }, 'feature list'), '.'));
  } else {
    try {
      const page = await found.route.load();
      const view = await page.render(main, ctx);
      if (current.controller === controller) current.view = view || null;
    } catch (e) {
      if (e.name === 'AbortError') return;
      fill(main, pageHeading('Error'), errorState(e, () => render({ focus: true })));
    }
  }
  if (focus && current.controller === controller) {
    const h1 = main.querySelector('h1');
    (h1 || main).focus({ preventScroll: true });
  }
  if (current.controller === controller) await restoreScroll(current.view?.ready, controller, scrollY);
}

// Goes to `href` (same origin): a new history entry, or the current one
// replaced (typing in a search box should not flood the back button).
export function navigate(href, { replace = false } = {}) {
  const url = new URL(href, location.href);
  const samePage = url.pathname === location.pathname;
  if (replace) {
    history.replaceState(history.state, '', url);
  } else {
    // Remember where this page was scrolled, for Back.
    history.replaceState({ ...history.state, scrollY: window.scrollY }, '', location.href);
    history.pushState(null, '', url);
  }
  if (!samePage) window.scrollTo(0, 0);
  render({ focus: !samePage });
}

function onClick(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download') || a.dataset.external !== undefined) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !match(url.pathname)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  e.preventDefault();
  navigate(url.href);
}

// Starts routing: renders the current URL and follows links and Back/Forward.
export function start() {
  if ('scrollRestoration' in history) history.scrollRestoration = 'manual';
  document.addEventListener('click', onClick);
  window.addEventListener('popstate', (e) => render({ focus: true, scrollY: e.state?.scrollY ?? 0 }));
  render({ focus: false });
}
