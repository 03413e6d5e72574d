/// <reference lib="webworker" />
// Watches the GPUDevice the compute worker's stages run on. A device is lost
// in the field (a driver reset, the GPU process gone, the OS taking the GPU
// back: PLATFORM.md) and then every run fails or, worse, might hand back
// what a dying device computed; the worker must say so at once, not answer
// each step with an error the page cannot tell from a bad input.
import type { DeviceLoss } from './messages.js';

export class DeviceWatch {
  private device: GPUDevice | null = null;
  private onLost: (loss: DeviceLoss) => void = () => {};
  /** The loss, once the watched device was lost. */
  lost: DeviceLoss | null = null;

  /**
   * Calls `onLost` once when `device` is lost, for any reason: this worker
   * never destroys its device itself (a worker that is done is terminated,
   * and its device goes with it unseen), so every loss seen here is the
   * field's, or the gpu-lost fault's, which loses it the same way.
   */
  watch(device: GPUDevice, onLost: (loss: DeviceLoss) => void): void {
    // The latest caller is told: a second load on the same worker gets the same device (onnxruntime-web keeps one), and
    // its new stages, not the ones it replaced, must learn of the loss. Told at once when the device is already lost.
    this.onLost = onLost;
    if (this.device === device) {
      if (this.lost !== null) onLost(this.lost);
      return;
    }
    this.device = device;
    void device.lost.then((info) => {
      if (this.device !== device || this.lost !== null) return;
      this.lost = { reason: String(info.reason ?? 'unknown'), message: info.message };
      this.onLost(this.lost);
    });
  }

  /**
   * The gpu-lost fault: destroys the watched device through the real API,
   * which resolves its lost promise (reason 'destroyed') and fails what runs
   * on it, as a driver reset would. False when no device is watched (WASM).
   */
  lose(): boolean {
    if (this.device === null) return false;
    this.device.destroy();
    return true;
  }
}
