"""Faces: frames sampled around speech, face tracks with mouth activity, who speaks on screen.

Plain typed functions (no dagster): ``episode.track_episode_faces`` is the stage,
``speaking.speaking_faces`` ranks the faces of each diarized turn.
"""
