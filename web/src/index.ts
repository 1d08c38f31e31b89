// Public entry of the bundle (web/dist/genai_bundle.{mjs,cjs}).

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
export { SHADERS, shaderSource } from "./shaders";
export { PRE_TOKENIZERS, StreamingDecoder, Tokenizer, codepointFlags, type EncodeOptions } from "./tokenizer";
