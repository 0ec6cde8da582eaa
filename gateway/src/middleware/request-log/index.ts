export { countAs, RequestLog, requestLogger } from './request-log.ts'
