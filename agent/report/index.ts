// The agent's reports to the cluster: its SkeinNode and Events on what it cannot honour.
import type { Logger } from "pino";
import type { KubeClient } from "../watch/kube.ts";
import { EventRecorder, messageFor, reasonFor } from "./events.ts";
import { SkeinNodeWriter } from "./skeinnode.ts";
import type { Reporter } from "./types.ts";

export type { NodeReport, ObjectRef, Outcome, Reporter, NodeSource } from "./types.ts";

export function clusterReporter(o: { kube: Pick<KubeClient, "request">; nodeName: string; log: Logger }): Reporter & { writer: SkeinNodeWriter; events: EventRecorder } {
  const writer = new SkeinNodeWriter(o);
  const events = new EventRecorder(o);
  return {
    writer,
    events,
    start: (source) => writer.start(source),
    changed: () => writer.changed(),
    refused: (ref, message, outcome) => {
      const reason = reasonFor(ref.kind, outcome);
      if (reason) events.warn(ref, reason, messageFor(ref, message, outcome));
    },
    stop: async () => {
      await Promise.all([writer.stop(), events.stop()]);
    },
  };
}
