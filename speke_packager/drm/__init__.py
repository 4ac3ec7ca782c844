"""DRM system data structures: pssh boxes, Widevine PSSH data, PlayReady objects.

Shared by the SPEKE client (validation), the key server (generation) and the MP4 writer."""
