// Readiness probe for scripts/kafka-up.sh: asks the broker for its cluster metadata with kafkajs
// (the client semdedup uses) and prints it as one JSON line. Exit 0 when it answered.
//   node scripts/kafka/describe-cluster.mjs 127.0.0.1:9092
import { Kafka, logLevel } from 'kafkajs';

const broker = process.argv[2] ?? '127.0.0.1:9092';
const kafka = new Kafka({
  clientId: 'semdedup-kafka-up',
  brokers: [broker],
  logLevel: logLevel.NOTHING,
  connectionTimeout: 3000,
  retry: { retries: 8, initialRetryTime: 200, maxRetryTime: 2000 },
});
const admin = kafka.admin();
try {
  await admin.connect();
  const cluster = await admin.describeCluster();
  console.log(JSON.stringify(cluster));
} catch (err) {
  console.error(`describeCluster on ${broker} failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  await admin.disconnect().catch(() => {});
}
