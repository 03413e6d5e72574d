/**
 * What the volunteer page and the widget's frame say, as pure functions: what
 * the tab will use, said before the click.
 */
import type { BackendPlan } from './backend-plan.js';

/** The consent button: names the hardware the tab will really use. */
export function consentLabel(plan: BackendPlan): string {
  switch (plan.kind) {
    case 'detecting':
      return 'Checking for a GPU…';
    case 'gpu':
      return "Donate this tab's GPU";
    case 'cpu':
      return "Donate this tab's CPU";
    case 'failed':
      return 'Cannot start';
    default:
      return plan satisfies never;
  }
}

/** Before the click: what the tab will compute on, and why. */
export function planText(plan: BackendPlan): string {
  switch (plan.kind) {
    case 'detecting':
      return 'Checking whether this browser offers a GPU (WebGPU)…';
    case 'gpu':
      return `It will compute on this tab's GPU with WebGPU (${plan.adapter}).`;
    case 'cpu':
      return plan.why === 'asked'
        ? 'It will compute on the CPU with WebAssembly, as asked.'
        : 'This browser offers no GPU (no WebGPU adapter), so it will compute on the CPU with WebAssembly.';
    case 'failed':
      return `Cannot start: ${plan.message}`;
    default:
      return plan satisfies never;
  }
}

/** planText for the widget's small frame. */
export function planShortText(plan: BackendPlan): string {
  switch (plan.kind) {
    case 'detecting':
      return 'Checking for a GPU…';
    case 'gpu':
      return "Runs on this tab's GPU (WebGPU)";
    case 'cpu':
      return plan.why === 'asked' ? 'Runs on the CPU (WebAssembly)' : 'No GPU here: runs on the CPU (WebAssembly)';
    case 'failed':
      return `Cannot start: ${plan.message}`;
    default:
      return plan satisfies never;
  }
}
