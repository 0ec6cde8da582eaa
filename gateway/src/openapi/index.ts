export { buildOpenApiDocument, openApiDocument } from './openapi-document.ts'
export { openapi } from './openapi-route.ts'
