/**
 * The messages of `grpc_predict_v2.proto` as proto-loader hands them over with the options in proto.ts
 * (`keepCase`, int64 as decimal strings, bytes as Buffer, defaults filled, `oneofs` naming the set field). Only
 * what the service reads and writes; on output, optional fields may be left out.
 * @module
 */

/** One `InferParameter`: exactly one of its fields, named by `parameter_choice`. */
export interface InferParameter {
  bool_param?: boolean
  /** int64 / uint64 as decimal strings (`longs: String`), so values beyond 2^53 arrive exact. */
  int64_param?: string
  string_param?: string
  double_param?: number
  uint64_param?: string
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'double_param' | 'uint64_param'
}

export type InferParameters = Record<string, InferParameter>

export interface InferTensorContents {
  bool_contents: boolean[]
  int_contents: number[]
  int64_contents: string[]
  uint_contents: number[]
  uint64_contents: string[]
  fp32_contents: number[]
  fp64_contents: number[]
  bytes_contents: Buffer[]
}

export interface InferInputTensor {
  name: string
  datatype: string
  shape: string[]
  parameters: InferParameters
  /** null when the request carries raw contents. */
  contents: InferTensorContents | null
}

export interface ModelInferRequest {
  model_name: string
  model_version: string
  id: string
  parameters: InferParameters
  inputs: InferInputTensor[]
  outputs: { name: string; parameters: InferParameters }[]
  raw_input_contents: Buffer[]
}

export interface InferOutputTensor {
  name: string
  datatype: string
  shape: number[]
  parameters?: InferParameters
}

export interface ModelInferResponse {
  model_name: string
  model_version: string
  id: string
  parameters: InferParameters
  outputs: InferOutputTensor[]
  raw_output_contents: Buffer[]
}

export interface ModelRequest {
  name: string
  version: string
}

export interface TensorMetadataMessage {
  name: string
  datatype: string
  shape: number[]
}

export interface ModelMetadataResponse {
  name: string
  versions: string[]
  platform: string
  inputs: TensorMetadataMessage[]
  outputs: TensorMetadataMessage[]
}

export interface ServerMetadataResponse {
  name: string
  version: string
  extensions: string[]
}
