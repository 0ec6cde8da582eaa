export { buildOpenApiDocument, openApiDocument } from './openapi-document.ts'
