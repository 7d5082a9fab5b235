"""Tests of the generation back-ends and the tiny test models."""
