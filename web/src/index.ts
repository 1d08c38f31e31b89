// Public entry of the bundle (web/dist/genai_bundle.{mjs,cjs}).

/** wgllm's version (web/package.json's; the Python package has the same: `wgllm --version`). */
export const VERSION: string = __WGLLM_VERSION__;

export * from "./errors";
export {
  DEFAULT_ALIGNMENT,
  GGML_TYPE_NAMES,
  GGUFHeader,
  GGUFStream,
  GGUFValueType,
  MAX_HEADER_BYTES,
  SUPPORTED_TENSOR_TYPES,
  fetchGGUF,
  readGGUF,
} from "./gguf";
export type { GGUFNumericArray, GGUFTensorChunk, GGUFTensorInfo, GGUFValue, ReadGGUFOptions } from "./gguf";
export { KV_ALIAS, SHADERS, SUBGROUP_ENTRIES, kvF16Variant, shaderSource, subgroupVariant } from "./shaders";
export { Engine, MAX_TOP_K } from "./engine";
export { DEQUANTIZED_TYPES, dequantize } from "./weights";
export type { EngineOptions, KvCacheType, LoadTimings, SampleSettings, SampledToken } from "./engine";
export { MAX_LOGIT_BIAS, MAX_STOP, MAX_TOP_LOGPROBS, SAMPLING_DEFAULTS, StopFilter, adjustEntries, checkSampling, checkStop } from "./sampling";
export type { SamplingChecked, SamplingExtras, TokenLogprob } from "./sampling";
export { EngineLora, LORA_OWNER_MESSAGE } from "./lora_gpu";
export type { LoraAsset, ModelLoadTimings } from "./runner";
export { ARCH_RECIPES, SUPPORTED_ARCHITECTURES, layerRope, modelConfigFromHeader } from "./model";
export type { ArchRecipe, ModelConfig } from "./model";
export { GpuContext, GpuOutOfMemoryError, KERNEL_FAMILIES, ShaderError, isCpuAdapter, resolveKernels } from "./gpu";
export type { KernelFamily } from "./gpu";
export { PRE_TOKENIZERS, StreamingDecoder, Tokenizer, codepointFlags, preTokenize, type EncodeOptions } from "./tokenizer";
export { GrammarState, GrammarVocabulary, JsonGrammar, SchemaError, applyMask, canonicalJson, grammarForResponseFormat, tokenMask } from "./grammar";
export type { GrammarOptions, GrammarTokenizer } from "./grammar";
export { FilesetResolver } from "./fileset_resolver";
export type { WasmFileset } from "./fileset_resolver";
export {
  DEFAULT_MAX_TOKENS,
  DEFAULT_NUM_RESPONSES,
  DEFAULT_RANDOM_SEED,
  DEFAULT_TEMPERATURE,
  DEFAULT_TOP_K,
  LlmInference,
  LoraModel,
  MAX_N,
} from "./llm_inference";
export type { ResponseFormat } from "./generator";
export type {
  GenerateOptions,
  GenerationResult,
  GenerationStats,
  LlmBaseOptions,
  LlmInferenceOptions,
  MultiResponseProgressListener,
  ProgressListener,
  Prompt,
  WebGpuOptions,
} from "./llm_inference";
export { LlmChat, chatTemplateOf, formatChat } from "./chat";
export { ChatEngine, ChatRequestError, createChatEngine } from "./openai";
export type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionMessageParam,
  ChatCompletionRequest,
  ChatCompletionTokenLogprob,
  Completion,
  CompletionRequest,
  CompletionUsage,
  LegacyLogprobs,
  RequestOptions,
} from "./openai";
export type { ChatMessage, FormatOptions } from "./chat";
export { LanguageModel, MAX_TEMPERATURE, SAMPLING_MODES, installLanguageModel } from "./prompt_api";
export type {
  Availability,
  LanguageModelConfig,
  LanguageModelCreateCoreOptions,
  LanguageModelCreateOptions,
  LanguageModelExpected,
  LanguageModelMessage,
  LanguageModelMessageContent,
  LanguageModelParams,
  LanguageModelPrompt,
  LanguageModelPromptOptions,
  LanguageModelSamplingMode,
} from "./prompt_api";
export { MODEL_CACHE_NAME, MODEL_HASH_CACHE_NAME, deleteCachedModel, recordedModelHash } from "./model_source";
export type { LoadProgressCallback, ModelAsset } from "./model_source";
