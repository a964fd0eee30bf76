// Imports one of web/assets' ES modules into Node, whatever Node thinks of a
// .js file outside a "type": "module" package: the source goes in as a data:
// URL. Only for modules with no imports of their own (format.js).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const WEB_ASSETS = fileURLToPath(new URL('../../web/assets/', import.meta.url));

export async function loadWebModule(name) {
  const src = readFileSync(WEB_ASSETS + name, 'utf8');
  return import(`data:text/javascript;base64,${Buffer.from(src).toString('base64')}`);
}
