export {
  loadTextSplit,
  readTextZoo,
  TEXT_ROUTING_INPUT,
  TEXT_ZOO_DIR,
  type TextExample,
  type TextSplit,
  type TextZooManifest,
  TextZooManifestSchema,
  type TextZooTask,
  TextZooTaskSchema,
  textRoutingPath,
  textZooPath,
} from './text-zoo.ts'
