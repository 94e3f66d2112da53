"""Reading the text inside images (OCR): RapidOCR's PP-OCR models on ONNX Runtime, shipped inside its wheel (the
`ocr` extra). `reader.TextReader` turns an image into lines of text with their boxes; the indexing pipeline runs
it as its own stage (`indexing/text_stage.py`), the catalog indexes the text (`catalog/fulltext.py`), and the
query engine matches and fuses it (`query/text_match.py`)."""
