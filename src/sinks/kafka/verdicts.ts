/**
 * Duplicate verdicts as Kafka messages: key = clip id, value =
 * `{"id", "max_id", "cosine_sim_score", "centroid"}`. The topic is a keyed changelog: a later
 * message for a key supersedes the earlier one, so re-sending one is harmless.
 */
import type { IdType } from '../../shared/types.js';
import type { KafkaOutMessage } from './sink.js';

export interface VerdictValue {
  readonly id: string;
  readonly maxId: string;
  readonly score: number;
  readonly centroid: number;
}

export function verdictMessage(v: VerdictValue, idType: IdType): KafkaOutMessage {
  // int64 ids go out as their exact digits (a JSON number), never through a float64.
  const q = (id: string) => (idType === 'int64' ? id : JSON.stringify(id));
  return {
    key: v.id,
    value: `{"id":${q(v.id)},"max_id":${q(v.maxId)},"cosine_sim_score":${JSON.stringify(v.score)},"centroid":${v.centroid}}`,
  };
}
