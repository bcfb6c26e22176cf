// Where IPAM state lives. Two implementations share one contract (store.case.ts):
// MemoryStore for unit tests, DiskStore for the plugin.
import { emptyState, type IpamState } from "./allocator.ts";

export interface IpamStore {
  /** Locked read-modify-write: `fn` returns the new state (or undefined to keep it) and a result. */
  update<T>(fn: (state: IpamState) => { state?: IpamState; result: T }): T;
  read(): IpamState;
}

export class MemoryStore implements IpamStore {
  private state: IpamState = emptyState();
  update<T>(fn: (state: IpamState) => { state?: IpamState; result: T }): T {
    const { state, result } = fn(structuredClone(this.state));
    if (state) this.state = structuredClone(state);
    return result;
  }
  read(): IpamState {
    return structuredClone(this.state);
  }
}
