import { InputError } from '../shared/errors.js';

// Kept apart from s3.ts so that parsing a path does not load the AWS SDK (~0.3 s of modules).

export interface S3Location {
  readonly bucket: string;
  /** The key or key prefix, without a leading `/`; '' for the bucket root. */
  readonly key: string;
}

export function parseS3Path(p: string): S3Location {
  const m = /^s3:\/\/([^/]*)\/?(.*)$/i.exec(p);
  if (!m || m[1] === '') throw new InputError(`${p}: an S3 path is s3://bucket/key`, { context: { file: p } });
  return { bucket: m[1]!, key: m[2]! };
}
