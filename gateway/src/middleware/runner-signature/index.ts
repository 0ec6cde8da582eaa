export { runnerSignature } from './runner-signature.ts'
