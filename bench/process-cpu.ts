/**
 * CPU time of processes from /proc (Linux): user + system time of every thread, as the kernel accounts it, so a
 * benchmark can divide a server's CPU over an arm by the requests it answered.
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs'

/** Kernel clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on). */
const TICKS_PER_S = 100

/** The fields after `comm`, which may itself hold spaces and parentheses. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** User + system CPU (ms) the processes have used so far, all their threads; a process gone counts 0. */
export function cpuMs(pids: readonly number[]): number {
  let ticks = 0
  for (const pid of pids) {
    const f = statFields(pid)
    // After comm: state(0) ppid(1) … utime(11) stime(12), i.e. /proc/pid/stat fields 14 and 15.
    if (f) ticks += Number(f[11]) + Number(f[12])
  }
  return (ticks * 1000) / TICKS_PER_S
}

/** Pids of `parent`'s direct children whose command name is `comm`. */
export function childrenNamed(parent: number, comm: string): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      if (name === comm && statFields(Number(entry))?.[1] === String(parent))
        out.push(Number(entry))
    } catch {
      // The process ended while we looked.
    }
  }
  return out
}

/** Every process below `root` (children, their children, …). */
export function descendants(root: number): number[] {
  const parentOf = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const f = statFields(Number(entry))
    if (f) parentOf.set(Number(entry), Number(f[1]))
  }
  const out: number[] = []
  const walk = (pid: number) => {
    for (const [child, parent] of parentOf)
      if (parent === pid) {
        out.push(child)
        walk(child)
      }
  }
  walk(root)
  return out
}
