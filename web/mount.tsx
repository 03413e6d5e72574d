import type { ComponentType } from 'react';
import { createRoot } from 'react-dom/client';
import './style.css';

/** Renders a page's root component into its #root element. */
export function mount(App: ComponentType): void {
  const root = document.getElementById('root');
  if (root === null) throw new Error('#root is missing');
  createRoot(root).render(<App />);
}
