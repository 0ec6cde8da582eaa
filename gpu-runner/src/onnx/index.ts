/**
 * ONNX without onnxruntime (`@twinserve/gpu-runner/onnx`): the protobuf bindings, a small graph builder and
 * float16 conversion.
 * @module
 */
export {
  decodeFloat16,
  encodeFloat16,
  float16Tensor,
  float16TensorValues,
  fromFloat16Bits,
  toFloat16Bits,
} from './float16.ts'
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
