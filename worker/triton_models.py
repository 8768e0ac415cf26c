"""The tensor names of the models `item_embedder` composes (text, image and audio encoders,
fusion). The worker calls only `item_embedder` and `user_encoder` (worker/triton.py); these
are reachable directly for tests and debugging, and a test checks them against each
model's config.pbtxt."""

TEXT_MODEL = "text_encoder"
TEXT_MODEL_INPUT = "TEXT"  # TYPE_STRING [1]
TEXT_MODEL_OUTPUT = "TEXT_EMBEDDING"  # FP32 [384]
IMAGE_MODEL = "image_encoder"
IMAGE_MODEL_INPUT = "IMAGE"  # TYPE_STRING [1]
IMAGE_MODEL_OUTPUT_EMBEDDING = "IMAGE_EMBEDDING"  # FP32 [1280]
IMAGE_MODEL_OUTPUT_LOGITS = "IMAGE_LOGITS"  # FP32 [1000]
IMAGE_MODEL_OUTPUT_TEXT_EMBEDDING = "IMAGE_TEXT_EMBEDDING"  # FP32 [384], the text space
IMAGE_MODEL_OUTPUT_ERROR = "ERROR"  # TYPE_STRING [1]
AUDIO_MODEL = "audio_encoder"
AUDIO_MODEL_INPUT = "AUDIO"  # TYPE_STRING [1]
AUDIO_MODEL_OUTPUT_EMBEDDING = "AUDIO_EMBEDDING"  # FP32 [512]
AUDIO_MODEL_OUTPUT_ERROR = "ERROR"  # TYPE_STRING [1]
FUSION_MODEL = "fusion"
FUSION_MODEL_INPUT_TEXT = "TEXT_EMBEDDING"  # FP32 [384]
FUSION_MODEL_INPUT_IMAGE_TEXT = "IMAGE_TEXT_EMBEDDING"  # FP32 [384]
FUSION_MODEL_INPUT_IMAGE = "IMAGE_EMBEDDING"  # FP32 [1280]
FUSION_MODEL_INPUT_AUDIO = "AUDIO_EMBEDDING"  # FP32 [512]
FUSION_MODEL_INPUT_MASK = "MODALITY_MASK"  # FP32 [3]: text, image, audio present
FUSION_MODEL_OUTPUT = "ITEM_VECTOR"  # FP32 [256]
