/**
 * A raw POST that announces more body than it sends (issue #16, case 5: a signed runner used to read an unsigned
 * 30 MiB body to the end before checking the signature). fetch cannot do this: it always sends what it announces.
 * @module
 */
import { request } from 'node:http'

/** POSTs to `url` announcing `bytes` of JSON and sending only 1 KB: the status, or 'no answer' in 5 s. */
export function announcedHugePost(url: string, bytes: number): Promise<number | 'no answer'> {
  return new Promise((resolve) => {
    const u = new URL(url)
    const req = request({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': bytes },
    })
    const done = (status: number | 'no answer') => {
      clearTimeout(timer)
      req.destroy()
      resolve(status)
    }
    const timer = setTimeout(() => done('no answer'), 5000)
    req.on('response', (res) => {
      res.resume()
      done(res.statusCode ?? 0)
    })
    req.on('error', () => done('no answer'))
    req.write(Buffer.alloc(1024, 0x20))
  })
}
