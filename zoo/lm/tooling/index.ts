export {
  argmax,
  type DecoderDims,
  DecoderSession,
  type KvCache,
  maxAbsDiff,
  positionsFromMask,
  type StepResult,
  sequenceNll,
} from './decoder-session.ts'
export {
  LM_ZOO_DIR,
  LM_ZOO_DOMAINS,
  type LmZooDoc,
  type LmZooDomain,
  type LmZooManifest,
  lmZooPath,
  loadLmZooTokenizer,
  readLmZooJson,
  readLmZooManifest,
  readLmZooSplit,
  renderLmZooChat,
} from './lm-zoo-files.ts'
