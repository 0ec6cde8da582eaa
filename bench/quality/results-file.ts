/**
 * The quality benchmarks' name for rewriting one generated section of bench/RESULTS.md: the one writer every
 * benchmark shares (bench/results-section.ts: re-read before writing, renamed into place, then formatted).
 * @module
 */
export { writeSection as replaceSection } from '../results-section.ts'
