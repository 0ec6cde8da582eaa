/**
 * A text model's raw-text input: V2 `BYTES` `text` of shape [n] (one UTF-8 string per row) in place of the token
 * tensors, tokenized by the package's tokenizer (text/text-tokenizer.ts, the builder's own code) into the model's
 * declared token inputs, in their declared order, so text rows batch with each other and with token requests of
 * the same padded length.
 * @module
 */
import {
  AppError,
  flattenTensorData,
  type RequestInput,
  TEXT_INPUT,
  type TensorMetadata,
} from '@twinserve/shared'
import type { TextTokenizer } from '../text/text-tokenizer.ts'
import type { HostTensor } from './tensors.ts'

/** The V2 metadata of the text input (listed beside the token inputs it replaces). */
export const TEXT_INPUT_METADATA: TensorMetadata = {
  name: TEXT_INPUT,
  datatype: 'BYTES',
  shape: [-1],
}

/** Whether a request sends raw text (which the model then must have a tokenizer for). */
export const sendsText = (inputs: readonly RequestInput[]): boolean =>
  inputs.some((i) => i.name === TEXT_INPUT)

/**
 * Tokenizes a request's `text` input into the declared token inputs.
 * @throws AppError INVALID_REQUEST naming `text`: other inputs beside it, a datatype other than BYTES, a shape
 *   other than [n], an empty batch, invalid UTF-8, or too many tokens where the package does not truncate
 */
export function decodeTextInput(
  inputs: readonly RequestInput[],
  declared: readonly TensorMetadata[],
  tokenizer: TextTokenizer,
): { tensors: HostTensor[]; rows: number } {
  const tokenInputs = declared.map((d) => d.name)
  const input = inputs.find((i) => i.name === TEXT_INPUT)
  if (!input || inputs.length !== 1)
    throw new AppError(
      'INVALID_REQUEST',
      `input '${TEXT_INPUT}' replaces the token inputs (${tokenInputs.join(', ')}); send it alone, not with ${inputs
        .filter((i) => i.name !== TEXT_INPUT)
        .map((i) => `'${i.name}'`)
        .join(', ')}`,
    )
  if (input.datatype !== 'BYTES')
    throw new AppError(
      'INVALID_REQUEST',
      `input '${TEXT_INPUT}' has datatype ${input.datatype}; it must be BYTES (UTF-8 strings), shape [n]`,
    )
  if (input.shape.length !== 1)
    throw new AppError(
      'INVALID_REQUEST',
      `input '${TEXT_INPUT}' has shape [${input.shape.join(',')}]; it must be [n], one string per row`,
    )
  const rows = input.shape[0] ?? 0
  if (rows === 0)
    throw new AppError(
      'INVALID_REQUEST',
      `input '${TEXT_INPUT}' is an empty batch (shape [0]); send at least one text`,
    )
  // The request schema already checked that there are n strings.
  const texts = flattenTensorData(input.data).map(String)
  const where = (i: number) =>
    rows === 1 ? `input '${TEXT_INPUT}'` : `input '${TEXT_INPUT}' row ${i}`
  const { ids, mask, seq } = tokenizer.encodeBatch(texts, where)
  const { idsInput, maskInput } = tokenizer.rule
  const tensors = declared.map((d): HostTensor => {
    if (d.name !== idsInput && d.name !== maskInput)
      throw new AppError('INTERNAL', `text model input '${d.name}' is not fed by its tokenizer`)
    return {
      name: d.name,
      type: 'int64',
      dims: [rows, seq],
      data: d.name === idsInput ? ids : mask,
    }
  })
  return { tensors, rows }
}
