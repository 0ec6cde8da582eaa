/**
 * The A/B experiment part of the gateway's OpenAPI document: admin API, feedback, dashboard, and the headers
 * the inference route takes and answers for experiments (experiments/).
 * @module
 */
import {
  ARM_HEADER,
  ArmConfigSchema,
  CreateExperimentRequestSchema,
  componentSchemas,
  EXPERIMENT_HEADER,
  ExperimentListSchema,
  ExperimentResultsSchema,
  ExperimentSchema,
  errorContent as error,
  FeedbackRequestSchema,
  FeedbackResponseSchema,
  type Json,
  jsonContent as json,
  schemaRef as ref,
  StopExperimentRequestSchema,
  UpdateWeightsRequestSchema,
  USER_ID_HEADER,
} from '@twinserve/shared'
import {
  CHART_SCRIPT_PATH,
  DASHBOARD_SCRIPT_PATH,
} from '../experiments/dashboard/dashboard-page.ts'
import { keyErrors, keySecurity } from './doc-common.ts'

export function experimentComponents(): Record<string, Json> {
  return {
    ...componentSchemas(
      {
        CreateExperimentRequest: CreateExperimentRequestSchema,
        ArmConfig: ArmConfigSchema,
        UpdateWeightsRequest: UpdateWeightsRequestSchema,
        StopExperimentRequest: StopExperimentRequestSchema,
        FeedbackRequest: FeedbackRequestSchema,
      },
      'input',
      'ExperimentInputShared_',
    ),
    ...componentSchemas(
      {
        Experiment: ExperimentSchema,
        ExperimentList: ExperimentListSchema,
        ExperimentResults: ExperimentResultsSchema,
        FeedbackResponse: FeedbackResponseSchema,
      },
      'output',
      'ExperimentOutputShared_',
    ),
  }
}

/** Request headers of the inference route that experiments read. */
export const experimentInferParameters: Json[] = [
  {
    name: USER_ID_HEADER,
    in: 'header',
    required: false,
    description:
      'The end user, for experiments whose unit is user_id (sticky assignment per user; printable, ≤ 128 chars).',
    schema: { type: 'string' },
  },
  {
    name: ARM_HEADER,
    in: 'header',
    required: false,
    description:
      'Pins an arm of the running experiment (keys with the admin scope only; recorded, left out of the statistics).',
    schema: { type: 'string' },
  },
]

/** Response headers of an inference served by an experiment arm. */
export const experimentInferHeaders: Json = {
  [ARM_HEADER]: {
    description: 'The experiment arm whose merge controls served the request.',
    schema: { type: 'string' },
  },
  [EXPERIMENT_HEADER]: {
    description: 'The experiment the request was exposed to.',
    schema: { type: 'string' },
  },
}

export function experimentPaths(): Json {
  const idParam = {
    name: 'id',
    in: 'path',
    required: true,
    schema: { type: 'string', pattern: '^exp_[0-9a-f]{16}$' },
  }
  const admin = (summary: string, op: Json): Json => ({
    tags: ['experiments'],
    summary,
    security: keySecurity,
    ...op,
    responses: { ...(op.responses as Json), ...keyErrors },
  })
  const body = (id: string, required = true): Json => ({
    required,
    content: { 'application/json': { schema: ref(id) } },
  })
  const experiment = (description: string) => json('Experiment', description)
  const script = (summary: string): Json => ({
    get: {
      tags: ['experiments'],
      summary,
      responses: {
        '200': {
          description: 'JavaScript',
          content: { 'text/javascript': { schema: { type: 'string' } } },
        },
      },
    },
  })
  return {
    '/admin/experiments': {
      post: admin('Create an experiment (draft)', {
        requestBody: body('CreateExperimentRequest'),
        responses: {
          '201': experiment('Created.'),
          '400': error('Invalid experiment, naming the field.'),
        },
      }),
      get: admin('List experiments, newest first', {
        parameters: [
          { name: 'model', in: 'query', required: false, schema: { type: 'string' } },
          {
            name: 'status',
            in: 'query',
            required: false,
            schema: { type: 'string', enum: ['draft', 'running', 'stopped'] },
          },
        ],
        responses: {
          '200': json('ExperimentList', 'Experiments.'),
          '400': error('Invalid query.'),
        },
      }),
    },
    '/admin/experiments/{id}': {
      get: admin('One experiment', {
        parameters: [idParam],
        responses: { '200': experiment('The experiment.'), '404': error('No such experiment.') },
      }),
    },
    '/admin/experiments/{id}/results': {
      get: admin(
        'Per-arm statistics, always-valid p-values against the control, decisions, time series',
        {
          parameters: [idParam],
          responses: {
            '200': json('ExperimentResults', 'Results now.'),
            '404': error('No such experiment.'),
          },
        },
      ),
    },
    '/admin/experiments/{id}/start': {
      post: admin('Start (one running experiment per model)', {
        parameters: [idParam],
        responses: {
          '200': experiment('Running.'),
          '400': error('Stopped already, or the model has another running experiment.'),
          '404': error('No such experiment.'),
        },
      }),
    },
    '/admin/experiments/{id}/stop': {
      post: admin('Stop (final)', {
        parameters: [idParam],
        requestBody: body('StopExperimentRequest', false),
        responses: { '200': experiment('Stopped.'), '404': error('No such experiment.') },
      }),
    },
    '/admin/experiments/{id}/weights': {
      put: admin('Re-weight arms (units of arms that do not shrink keep their arm)', {
        parameters: [idParam],
        requestBody: body('UpdateWeightsRequest'),
        responses: {
          '200': experiment('Re-weighted.'),
          '400': error('Unknown arm, total over 100%, stopped or running thompson experiment.'),
          '404': error('No such experiment.'),
        },
      }),
    },
    '/admin/experiments/{id}/arms': {
      post: admin('Append an arm', {
        parameters: [idParam],
        requestBody: body('ArmConfig'),
        responses: {
          '201': experiment('The experiment with the new arm.'),
          '400': error('Duplicate name, a second control, total over 100%.'),
          '404': error('No such experiment.'),
        },
      }),
    },
    '/v1/feedback': {
      post: {
        tags: ['experiments'],
        summary: 'Attach an outcome (reward, or label compared with the prediction) to an exposure',
        security: keySecurity,
        requestBody: body('FeedbackRequest'),
        responses: {
          '200': json('FeedbackResponse', 'Recorded (or a duplicate of what was).'),
          '400': error(
            'Invalid body, a label that does not fit the prediction, or different feedback again.',
          ),
          '404': error(
            'No exposure with that request id for this key (unknown or another tenant’s).',
          ),
          ...keyErrors,
        },
      },
    },
    '/dashboard': {
      get: {
        tags: ['experiments'],
        summary: 'The experiments dashboard (a static page; its data needs an admin key)',
        responses: {
          '200': { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } },
        },
      },
    },
    [CHART_SCRIPT_PATH]: script('Chart.js browser bundle for the dashboard'),
    [DASHBOARD_SCRIPT_PATH]: script('The dashboard script'),
  }
}
