export { generateHandler } from './generate-routes.ts'
export { openai } from './openai-routes.ts'
