export {
  decodeTensorBytes,
  ELEMENT_BYTES,
  type Element,
  encodeTensorBytes,
} from './binary-tensors.ts'
export {
  type BodyEncoding,
  compressBody,
  decompressBody,
  requestEncoding,
  responseEncoding,
} from './content-encoding.ts'
export { isInferenceResponse } from './fast-infer-response.ts'
export {
  INFERENCE_HEADER_CONTENT_LENGTH,
  inferHeaderLength,
  type ParsedInferBody,
  parseInferBody,
} from './infer-body.ts'
export {
  checkInferResponseBody,
  type EncodedInferResponse,
  encodeInferResponse,
} from './infer-response-body.ts'
export {
  type ProtocolParameters,
  type SplitParameters,
  splitRequestParameters,
} from './protocol-parameters.ts'
