# The public names of ``selfretrieval_integrations``, each once: ``__init__.py`` loads them lazily
# from this list, and type checkers read it as the package's interface.

from .base_models import load_base_model as load_base_model
from .corpus import ChunkingConfig as ChunkingConfig
from .corpus import Corpus as Corpus
from .corpus import Document as Document
from .corpus import Passage as Passage
from .corpus import load_corpus as load_corpus
from .errors import ArtifactError as ArtifactError
from .errors import CorpusError as CorpusError
from .errors import ModelLoadError as ModelLoadError
from .errors import QueryError as QueryError
from .errors import SelfRetrievalError as SelfRetrievalError
from .errors import TokenizationError as TokenizationError
from .index import PassageTrie as PassageTrie
from .retrieval import AssessmentConfig as AssessmentConfig
from .retrieval import DecodingConfig as DecodingConfig
from .retrieval import Fusion as Fusion
from .retrieval import PromptTemplate as PromptTemplate
from .retrieval import Renderer as Renderer
from .retrieval import RerankConfig as RerankConfig
from .retrieval import RerankMethod as RerankMethod
from .retrieval import RetrievalConfig as RetrievalConfig
from .retrieval import RetrievalResult as RetrievalResult
from .retrieval import SelfRetrievalModel as SelfRetrievalModel
from .retrieval import rerank as rerank
from .retrieval.updates import delete_documents as delete_documents

__version__: str
