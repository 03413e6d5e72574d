// DeviceWatch tells the latest watcher of a device's loss. Node has no WebGPU
// here, so the device is a stand-in with the two members DeviceWatch uses (a
// lost promise and destroy, which resolves it as a real device's does).
import { describe, expect, it } from 'vitest';
import { DeviceWatch } from './device-watch.js';
import type { DeviceLoss } from './messages.js';

function standIn(): GPUDevice {
  let resolve: (info: { reason: string; message: string }) => void = () => {};
  const lost = new Promise<{ reason: string; message: string }>((r) => {
    resolve = r;
  });
  return { lost, destroy: () => resolve({ reason: 'destroyed', message: 'Device was destroyed.' }) } as unknown as GPUDevice;
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe('DeviceWatch', () => {
  it('a second watch of the same device (a second load in one worker) moves the news to the new watcher', async () => {
    const watch = new DeviceWatch();
    const device = standIn();
    const first: DeviceLoss[] = [];
    const second: DeviceLoss[] = [];
    watch.watch(device, (l) => first.push(l));
    watch.watch(device, (l) => second.push(l));
    expect(watch.lose()).toBe(true);
    await settle();
    expect(first).toEqual([]);
    expect(second).toEqual([{ reason: 'destroyed', message: 'Device was destroyed.' }]);
  });

  it('a watch after the loss is told at once', async () => {
    const watch = new DeviceWatch();
    const device = standIn();
    watch.watch(device, () => {});
    watch.lose();
    await settle();
    const late: DeviceLoss[] = [];
    watch.watch(device, (l) => late.push(l));
    expect(late).toEqual([{ reason: 'destroyed', message: 'Device was destroyed.' }]);
  });

  it('tells once, and nothing without a device', async () => {
    const watch = new DeviceWatch();
    expect(watch.lose()).toBe(false);
    const device = standIn();
    const told: DeviceLoss[] = [];
    watch.watch(device, (l) => told.push(l));
    watch.lose();
    watch.lose();
    await settle();
    expect(told).toHaveLength(1);
  });
});
