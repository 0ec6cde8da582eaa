/**
 * Text generation over decoder packages (issue 14): the continuous-batching engine with a KV cache per sequence,
 * sampling, stop strings, and the tokenizer/chat-template profile. The HTTP routes are in server/.
 * @module
 */

export { bakedMixGraph } from './baked-mix-graph.ts'
export { type DecodeGraph, decodeGraph } from './decode-graph.ts'
export { decoderAsServed, isKvDecoder } from './decoder-as-served.ts'
export {
  DecoderGraph,
  type DecoderLayout,
  type ScoreFeeds,
  type ScoreOutputs,
} from './decoder-graph.ts'
export {
  type EngineOptions,
  type FinishReason,
  GenerationEngine,
  type GenerationEvent,
  type GenerationRequest,
} from './engine.ts'
export {
  type GroupedLikelihoodGraph,
  groupedLikelihoodGraph,
} from './grouped-likelihood-graph.ts'
export { KvBudget } from './kv-budget.ts'
export {
  type LikelihoodGraph,
  likelihoodGraph,
  TARGET_IDS,
  TARGET_LOGPROBS,
} from './likelihood-graph.ts'
export { type ChatTurn, LmProfile } from './lm-profile.ts'
export {
  MERGE_MIX,
  type MergedDecodeGraph,
  type MergedMatrix,
  mergedDecodeGraph,
} from './merged-decode-graph.ts'
export { exposeNewKv, newKvOutput, withoutNewKv } from './new-kv-outputs.ts'
export {
  bagFeatures,
  bagProbabilities,
  type PromptBag,
  type PromptBagFile,
  type PromptBagSpec,
  type PromptBagTraining,
  promptBagFile,
  readPromptBag,
  sureExpert,
  trainPromptBag,
} from './prompt-bag.ts'
export {
  lengthGroups,
  likelihoodPosterior,
  likelihoodWeights,
  type PromptEvidence,
  type PromptLikelihoodOptions,
  promptEvidence,
  promptEvidenceBatch,
  promptNlls,
  scoringFeeds,
  scoringRow,
  tokenNll,
} from './prompt-likelihood.ts'
export { logSoftmax, Sampler, type SamplingParams, sequenceRng } from './sampler.ts'
export { TextGenerator, type TextGeneratorOptions } from './text-generator.ts'
export { type Detokenizer, TextStream } from './text-stream.ts'
