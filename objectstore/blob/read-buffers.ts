/**
 * Read buffers for object bodies, recycled once their consumer is done with
 * them (the S3 layer says so when the socket has taken the bytes), so a GET
 * allocates nothing per MiB. A fresh 1 MiB buffer per read made V8 run a full
 * collection every 20–40 ms for "external memory pressure", a third of the
 * event loop's time during a large GET. Only whole buffers this pool issued
 * are taken back; a consumer that keeps a chunk simply never returns it.
 */
export const READ_BUFFER = 1 << 20;
/** Free buffers kept (8 MiB at most: a GET holds two or three at a time, its read-ahead and the socket's). */
const KEEP = 8;

const free: Buffer[] = [];
const issued = new WeakSet<Uint8Array>();

export function readBuffer(): Buffer {
  const b = free.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER);
  issued.add(b);
  return b;
}

/**
 * Hands back a chunk a body yielded, once nothing references its bytes any
 * more. Anything but a whole buffer from readBuffer() is ignored.
 */
export function recycleReadBuffer(b: Uint8Array): void {
  if (!issued.delete(b)) return;
  if (free.length < KEEP) free.push(b as Buffer);
}
