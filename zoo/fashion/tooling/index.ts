export { DIGIT_CLASSES, loadDigits, parseDigitsCsv, type RawDigits } from './digits.ts'
export {
  FASHION_CLASSES,
  FASHION_MNIST_DEBIAN_PACKAGE,
  FASHION_MNIST_DIR,
  FASHION_MNIST_DIR_ENV,
  fashionMnistDir,
  IMAGE_PIXELS,
  IMAGE_SIDE,
  loadFashionMnist,
  type RawImages,
} from './fashion-mnist.ts'
export { type IdxArray, type IdxExpect, parseIdx, readIdx } from './idx.ts'
export {
  DEFAULT_ROUTING_PATH,
  ROUTING_INPUT_NAME,
  routingLine,
  writeRoutingJsonl,
} from './routing-data.ts'
export {
  type LoadTaskSplitOptions,
  loadTaskSplit,
  splitIndices,
  type TaskSplit,
  ZOO_SPLITS,
  type ZooSplit,
} from './task-data.ts'
export {
  getZooTask,
  isZooTaskName,
  pixelPermutation,
  ZOO_TASK_NAMES,
  ZOO_TASKS,
  type ZooTask,
  type ZooTaskName,
} from './tasks.ts'
export {
  type BuildZooOptions,
  type BuildZooResult,
  buildZoo,
  ZOO_GRAPH_NAME,
  ZOO_INPUT_NAME,
  ZOO_OUTPUT_NAME,
  ZOO_RECIPE,
  type ZooRecipe,
} from './zoo-builder.ts'
export {
  DEMO_ZOO_DIR,
  readZooManifest,
  type ZooExpert,
  type ZooManifest,
  ZooManifestSchema,
} from './zoo-manifest.ts'
