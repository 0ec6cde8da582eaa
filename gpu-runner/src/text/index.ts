/**
 * Text models (`@twinserve/gpu-runner/text`): the tokenizer and input rule the builder and the runner share.
 * @module
 */
export { type EncodedTexts, type TextRule, TextTokenizer } from './text-tokenizer.ts'
