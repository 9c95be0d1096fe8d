"""The pure core: pixels -> model input -> vector (decode, limits, preprocess, embed).

No Orthanc and no network here: the plugin, the offline tools and training share it.
"""
