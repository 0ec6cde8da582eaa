/**
 * ONNX without onnxruntime (`@twinserve/gpu-runner/onnx`): the protobuf bindings, a small graph builder and
 * float16 conversion.
 * @module
 */
// float16.ts is conversion functions only, all of them public.
export * from './float16.ts'
export {
  type AttrValue,
  type Dim,
  type ElemType,
  floatTensor,
  GraphBuilder,
  int64Tensor,
  toAttribute,
  valueInfo,
} from './graph-builder.ts'
export {
  type GraphProto,
  type IAttributeProto,
  type IModelProto,
  type INodeProto,
  type ITensorProto,
  type IValueInfoProto,
  type ModelProto,
  type NodeProto,
  onnx,
  type TensorDataType,
  type TensorProto,
  toNumber,
} from './proto.ts'
