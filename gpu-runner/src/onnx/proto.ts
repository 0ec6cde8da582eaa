/**
 * The ONNX protobuf schema (onnx-proto: ONNX v1.10 messages on protobufjs). CommonJS underneath, hence the
 * default import.
 * @module
 */
import onnxProto from 'onnx-proto'

export const onnx = onnxProto.onnx
export type ModelProto = onnxProto.onnx.ModelProto
export type GraphProto = onnxProto.onnx.GraphProto
export type IGraphProto = onnxProto.onnx.IGraphProto
export type NodeProto = onnxProto.onnx.NodeProto
export type TensorProto = onnxProto.onnx.TensorProto
export type IModelProto = onnxProto.onnx.IModelProto
export type INodeProto = onnxProto.onnx.INodeProto
export type ITensorProto = onnxProto.onnx.ITensorProto
export type IValueInfoProto = onnxProto.onnx.IValueInfoProto
export type IAttributeProto = onnxProto.onnx.IAttributeProto

export const TensorDataType = onnxProto.onnx.TensorProto.DataType

/** protobufjs decodes int64 as Long objects or numbers depending on what is installed; this takes either. */
export function toNumber(v: number | { toNumber(): number } | null | undefined): number {
  if (v == null) return 0
  return typeof v === 'number' ? v : v.toNumber()
}
