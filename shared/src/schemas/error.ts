import { z } from 'zod'
import { ERROR_CODES, type ErrorCode } from '../errors.ts'

const codes = Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]

export const ErrorCodeSchema = z.enum(codes)

/**
 * The error body. `error` is the human message, as the Open Inference Protocol requires
 * (`{"error": "<msg>"}`); `code` and `request_id` are our additions so that clients can branch on the code.
 */
export const ErrorBodySchema = z.object({
  error: z.string(),
  code: ErrorCodeSchema,
  request_id: z.string().optional(),
})
export type ErrorBody = z.infer<typeof ErrorBodySchema>
