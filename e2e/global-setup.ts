import { buildWebApp } from './harness.js';

export default function setup(): void {
  buildWebApp();
}
